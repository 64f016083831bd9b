"""The local web app of `g2g app`: a page to swap, mix with K class references, draw class × content
grids and interpolate class codes with a model, served by the standard library on 127.0.0.1."""
from .server import make_server, serve

__all__ = ["make_server", "serve"]
