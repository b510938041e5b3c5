from tests.support.images import busybox_root, busybox_store_template, busybox_tar  # noqa: F401
