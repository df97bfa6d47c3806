"""Every whole (not streamed) answer states its length.

Without Content-Length, gunicorn frames an answer in chunks: three writes to the socket
(head, chunk, last chunk) where two do, and the front passes it on chunked as well. The
publish fast path (service/api/fast_path.py) states it the same way.
"""


class ContentLengthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
