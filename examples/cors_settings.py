"""
A houweb settings file: houweb.run(settings="examples/cors_settings.py"), or
``python -m houweb --settings examples/cors_settings.py``.

Like a Django settings module, its module-level UPPERCASE names are the
settings. houweb reads the CORS whitelist: pages served from these origins
may call this server from the browser (fetch/XMLHttpRequest), and their
preflight OPTIONS requests are answered for them. Other origins get no CORS
headers, so the browser keeps their pages from reading the answers.
"""

CORS_ALLOWED_ORIGINS = [
    "http://localhost:3000",  # a front-end dev server
    "https://app.example.com",
]

# The classic Django name works too; entries of both are combined.
# CORS_ORIGIN_WHITELIST = ["*"]  # any origin: for development only
