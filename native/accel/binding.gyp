{
  "targets": [
    {
      "target_name": "accel",
      "sources": ["accel.c", "direct.c", "gcm-vaes.c"],
      "cflags": ["-O3", "-Wall"]
    }
  ]
}
