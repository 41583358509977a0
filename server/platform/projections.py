"""(being written)"""


async def project_events(store, batch_size):
    """Copy up to `batch_size` unprojected events into msg_events_read; the number copied."""
    return 0


async def project_jobs(store, batch_size):
    """Upsert up to `batch_size` changed dispatch jobs into msg_dispatch_jobs_read; the number."""
    return 0
