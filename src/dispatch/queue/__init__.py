"""The durable task queue: every background action in Dispatch is a job here.

``service`` is the only module that holds queue SQL; ``policy`` decides retries
without I/O; ``errors`` holds what a handler may raise to steer its job.
"""
