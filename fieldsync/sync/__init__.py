"""The sync ledger: decide create / update / delete / nothing per (appointment, binding)."""
