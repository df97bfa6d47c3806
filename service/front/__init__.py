"""The http role's buffering front: nginx in front of gunicorn, in the same pod.

gunicorn's workers set no deadline for a request to arrive (uvicorn's none for its header
or body; gthread, before it, held a thread the while), so clients sending their requests
slowly would hold connections and buffers for as long as they like (gunicorn's docs ask
for a buffering proxy). nginx reads each request whole, within time and size bounds,
before passing it to gunicorn over loopback, and answers its own refusals in the API's
JSON error shape. `python -m service.front` renders its configuration from the
environment (config.py, nginx.conf) and runs it (runner.py).
"""
