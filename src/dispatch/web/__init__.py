"""The admin UI: server-rendered pages that call the same services as the API."""
