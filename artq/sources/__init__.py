"""Metric sources: the AppDynamics REST client and the simulator that speaks the same API."""
