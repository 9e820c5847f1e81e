"""Re-creations of systems named in Schmidhuber's review of the paper (issue 8; seed_systems.md)."""
