"""What the car runs: the observation, its features, the model bundle and its NumPy forward
pass. The car (``fleet/``), training and simulation all import it; it imports only the lake,
so a vehicle never pulls in a cloud stage."""
