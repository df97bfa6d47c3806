"""The http role's buffering front: nginx in front of gunicorn, in the same pod.

gunicorn's gthread workers hold a thread for as long as a request takes to arrive, so a
few dozen clients sending their requests slowly hold every thread (gunicorn's docs ask
for a buffering proxy). nginx reads each request whole, within time and size bounds,
before passing it to gunicorn over loopback, and answers its own refusals in the API's
JSON error shape. `python -m service.front` renders its configuration from the
environment (config.py, nginx.conf) and runs it (runner.py).
"""
