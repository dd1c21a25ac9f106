"""The projector: reads the CDR and node-facts topics and keeps the SQL projection (CONTRACT §12).

``batches`` turns Kafka records into one store transaction; ``service`` runs it in a consumer
group; ``rebuild`` replays both topics from the start into an empty database.
"""
