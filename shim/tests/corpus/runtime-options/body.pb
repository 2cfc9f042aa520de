
sporeˆSystemdCgroup = true
Root = "/run/spore-runc"
BinaryName = "/usr/bin/runc"
CacheDir = "/var/lib/spore/cache"
CacheMaxBytes = 1073741824
