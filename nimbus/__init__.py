"""The nimbus daemon: submission, scheduling, assignments and the topology lifecycle."""
