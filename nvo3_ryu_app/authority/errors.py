"""What the authority answers when it refuses a request.

Every interface maps these to its own form: REST to an HTTP status and
``{"error": {"code", "message", "field"}}``, the registration RPC to an RPC
error map, the configuration file to one line naming the bad item.
"""


class MappingError(Exception):
    """A request the database refuses; ``status`` is the HTTP-like class."""

    status = 400
    code = 'bad-request'

    def __init__(self, message, field_name=None):
        super().__init__(message)
        self.message = message
        self.field = field_name


class BadRequest(MappingError):
    """A value that is malformed or not allowed (400)."""


class NotFound(MappingError):
    """A VN, NVE, port or tenant system that does not exist (404)."""

    status = 404
    code = 'not-found'


class Conflict(MappingError):
    """A request that contradicts the database's state (409)."""

    status = 409
    code = 'conflict'


class Unavailable(MappingError):
    """The authority cannot take writes now (503): in a cluster, this
    instance holds no etcd lease (cut off, or just back from a freeze), or
    etcd could not commit the change.  Nothing was changed; try again, or
    another instance."""

    status = 503
    code = 'unavailable'
