"""The vehicle side: drive-log contract and writer, uploader (later: simulator, OTA client)."""
