"""The intake's HTTP routes, one module per area; `fieldsync.intake.app` assembles them."""
