"""The coordination primitives: context, signals, results, completion, locks.

Every function takes a connected redis client (see cfn.backend.session) and
validates its input before it writes anything.
"""
