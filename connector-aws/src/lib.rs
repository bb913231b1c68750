//! AWS IoT Core behind the connector's provider boundary (work in progress).
