"""The supervisor daemon: registers its slots and starts, watches and stops workers."""
