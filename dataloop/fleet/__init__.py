"""The vehicle side: drive-log contract and writer, uploader, OTA client (the signed
assignment and bundle, through TUF), simulated fleet. Imports only ``fleet``, ``policy`` and
``lake``: the car runs without the cloud."""
