"""Webhooks: an account's durable events POSTed, signed, to its endpoints.

``addresses`` decides which hosts may be called, ``transport`` calls them, ``payload`` says
what is sent, ``deliverer`` runs each endpoint's delivery, off every request path.
"""
