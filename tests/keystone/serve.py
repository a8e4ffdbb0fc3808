"""Serves Keystone's public WSGI application on 127.0.0.1 for Ember's tests.

Usage: python serve.py PORT KEYSTONE_CONF
"""
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

port, conf = int(sys.argv[1]), sys.argv[2]
sys.argv = sys.argv[:1]  # oslo.config parses the command line
os.environ["OS_KEYSTONE_CONFIG_FILES"] = conf

from keystone.server.wsgi import initialize_public_application  # noqa: E402


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", port, initialize_public_application(), handler_class=QuietHandler).serve_forever()
