"""The worker role: `runworker groupcast.jobs groupcast.events` runs bulk broadcasts and
hands connection events to the webhook."""
