"""Dramatiq middleware: healthy DB connections and run recording (status, retries, cancellation)."""
