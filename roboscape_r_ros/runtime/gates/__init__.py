"""Gates in plain Python: which frame, Action or message may pass, and when the arm must hold."""
