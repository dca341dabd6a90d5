"""WHIP ingest (RFC 9725): a session's hall program published by an encoder over one HTTP POST."""
