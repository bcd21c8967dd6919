"""Names of the stack outputs, shared by the program and its tests."""

HUB_URL = "hubUrl"
CA_CERTIFICATE = "caCertificate"
IMAGES = "images"
ADMIN_USERS = "adminUsers"
HUB_CONTAINER = "hubContainer"
PROXY_CONTAINER = "proxyContainer"
NETWORKS = "networks"
