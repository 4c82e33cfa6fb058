"""What each node runs, in plain Python: the dream, the reward, the sim, the camera ingest, the recording."""
