"""OpenVidu's exact key sets (reference §12; broadcasts §13), written out independently of the
code and the schemas, so tests compare what mediacdr emits against the reference itself.

Sets here exclude ``event``; ``with_event`` adds it.
"""

from __future__ import annotations

SESSION = frozenset({"sessionId", "uniqueSessionId", "timestamp"})
ENDED = frozenset({"startTime", "duration", "reason"})
PARTICIPANT = SESSION | {
    "participantId",
    "connectionId",
    "location",
    "ip",
    "platform",
    "clientData",
    "serverData",
}
WEBRTC_OUTBOUND_VIDEO = SESSION | {
    "streamId",
    "participantId",
    "connectionId",
    "connection",
    "videoSource",
    "videoFramerate",
    "videoDimensions",
    "audioEnabled",
    "videoEnabled",
}
WEBRTC_INBOUND_VIDEO = WEBRTC_OUTBOUND_VIDEO | {"receivingFrom"}
#: ``started``, INDIVIDUAL (no layout, resolution or frame rate; no reason)
RECORDING_STARTED = SESSION | {
    "startTime",
    "duration",
    "id",
    "name",
    "outputMode",
    "hasAudio",
    "hasVideo",
    "size",
    "status",
}
BROADCAST_STARTED = SESSION | {"broadcastUrl"}
NODE = frozenset({"timestamp", "id", "environmentId", "ip", "uri", "clusterId"})
NODE_CRASHED = NODE | {
    "nodeRole",
    "sessionIds",
    "recordingIds",
    "broadcasts",
    "timeOfDisconnection",
}
NODE_STATUS = NODE | {"newStatus", "oldStatus"}
NOTICE = SESSION | {"connectionId", "reason", "suggestedMediaNodeId"}


def with_event(keys: frozenset[str]) -> frozenset[str]:
    return keys | {"event"}
