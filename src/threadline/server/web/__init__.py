"""The HTTP and gRPC transports, the REST API and the web UI.

Importing this package registers the URL convertors of :mod:`.paths` before any route exists.
"""

from threadline.server.web import paths as paths
