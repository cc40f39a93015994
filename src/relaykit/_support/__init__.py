"""Ground floor: small helpers that import nothing else of relaykit (argument checks, canonical
JSON, background writes, secrets, the labelled shortcuts).
"""
