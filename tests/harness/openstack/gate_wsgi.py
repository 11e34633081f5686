"""Loads one OpenStack WSGI application for gunicorn (gate's test harness).

oslo.config reads sys.argv inside the application, where gunicorn's own arguments would be
taken for the service's: this module resets sys.argv to the program name and the arguments
in GATE_WSGI_ARGV (space-separated), then imports GATE_WSGI_APP (e.g. keystone.wsgi.api)
and exposes its `application`. Each service's config directory is passed in its own
environment variable (OS_KEYSTONE_CONFIG_DIR, OS_NOVA_CONFIG_DIR, ...).
"""
import importlib
import os
import sys

sys.argv = [os.environ.get("GATE_WSGI_PROG", "gate-wsgi")] + os.environ.get(
    "GATE_WSGI_ARGV", ""
).split()
application = importlib.import_module(os.environ["GATE_WSGI_APP"]).application
