"""Who may do what: roles and their permissions, API key secrets, password hashing, the gate.

``roles`` is the one home of the roles and what each may do; ``secrets_`` makes and digests API
keys and login tokens; ``gate`` turns a request's credentials into a :class:`~.roles.Principal`.
"""
