"""Training: SFTModule, GRPOModule, the GRPO objective (pure functions), reward callbacks, callbacks."""
