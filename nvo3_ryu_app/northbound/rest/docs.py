"""REST: the OpenAPI document, Prometheus metrics and the web view."""

import mimetypes
import os
import re

from webob import Response

from ...authority.errors import NotFound
from .server import WEB_DIR, route


@route('GET', '/v1/openapi.json')
def openapi(api, req):
    """GET /v1/openapi.json: the API's OpenAPI document."""
    return Response(status=200, body=api.openapi,
                    content_type='application/json', charset=None)


@route('GET', '/metrics')
def prometheus(api, req):
    """GET /metrics: the Prometheus exposition."""
    body, content_type = api.metrics.exposition()
    resp = Response(status=200, body=body)
    resp.headers['Content-Type'] = content_type
    return resp


def _static(name):
    path = os.path.join(WEB_DIR, name)
    if not re.fullmatch(r'[A-Za-z0-9_-][A-Za-z0-9._-]*', name) \
            or not os.path.isfile(path):
        raise NotFound('no such file: /ui/%s' % name[:100], 'path')
    with open(path, 'rb') as handle:
        body = handle.read()
    content_type = mimetypes.guess_type(name)[0] or 'application/octet-stream'
    if name.endswith('.js'):
        content_type = 'application/javascript'
    resp = Response(status=200, body=body, content_type=content_type,
                    charset='utf-8' if content_type.startswith(
                        ('text/', 'application/javascript')) else None)
    resp.headers['Cache-Control'] = 'no-cache'
    return resp


@route('GET', '/')
def index(api, req):
    """GET /: the web view."""
    return _static('index.html')


@route('GET', '/ui/{path}')
def ui_file(api, req, path):
    """GET /ui/{path}: a file of the web view."""
    return _static(path)
