"""Redis as every role uses it: clients, key names, the wire encoding of a group's
traffic, publishing, history, presence counts and job records."""
