"""The http role (gunicorn + Django): the publish, token, job and group API, the demo
page, and the probes."""
