"""The Relay and its sync API: validates a request once, routes it by model alias, and runs it
through the middleware and the strategy over the targets.
"""
