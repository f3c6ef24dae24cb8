"""Webhooks: endpoints a tenant registers, signed deliveries (Standard Webhooks) sent by a Celery
task with exponential backoff, every attempt recorded, redelivery on request."""
