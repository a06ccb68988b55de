"""The HTTP/JSON gateway: every annotated RPC of every service as HTTP/JSON, OpenAPI and its page."""
