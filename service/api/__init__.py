"""The HTTP API: publish, tokens, jobs and group info, all JSON."""
