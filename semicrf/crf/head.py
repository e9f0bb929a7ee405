"""Placeholder: replaced by the core implementation."""


class SemiCRFHead:
    pass
