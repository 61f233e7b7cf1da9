"""Gateway (seed 002): endpoints, resources, clients, mapping, delivery with ordered failover.

Breakers, health checks and alerts keep deliveries away from resources that are down.
"""
