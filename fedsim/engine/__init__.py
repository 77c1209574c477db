"""The round loop, PeerGroup and backends."""
