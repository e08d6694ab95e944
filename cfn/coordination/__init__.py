"""The coordination primitives: context, signals, results, completion, locks.

Every function takes a connected redis client (cfn.Project.redis, or any redis-py client) and
validates its input before it writes anything.
"""
