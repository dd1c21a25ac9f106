"""`mediacdr api`: monitoring and CDR queries, webhook management, OpenVidu ingest, the dashboard
(CONTRACT §14). ``app.create_app`` builds the FastAPI application; the rest are its parts."""
