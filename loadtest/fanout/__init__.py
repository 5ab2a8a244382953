"""Fan-out benchmark: one sender, N receivers in one `broadcast` room, on a real relay."""
