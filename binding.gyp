{
  "variables": {
    "sanitize%": "<!(node -p \"process.env.SHMCHANNEL_SANITIZE === '1' ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "shmchannel",
      "sources": [
        "native/core/status.cc",
        "native/core/segment.cc",
        "native/core/truncation_guard.cc",
        "native/core/ring.cc",
        "native/core/liveness.cc",
        "native/core/doorbell.cc",
        "native/core/channel.cc",
        "native/core/pool.cc",
        "native/core/shared_memory.cc",
        "native/core/directory.cc",
        "native/core/connect.cc",
        "native/core/server.cc",
        "native/core/inspect.cc",
        "native/binding/arguments.cc",
        "native/binding/error.cc",
        "native/binding/environments.cc",
        "native/binding/waker.cc",
        "native/binding/peer_watch.cc",
        "native/binding/segment_watch.cc",
        "native/binding/channel_wrap.cc",
        "native/binding/server_wrap.cc",
        "native/binding/server_waker.cc",
        "native/binding/connector_wrap.cc",
        "native/binding/loan_views.cc",
        "native/binding/shared_memory_wrap.cc",
        "native/binding/message_pool.cc",
        "native/binding/addon.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lrt", "-lpthread"],
      "conditions": [
        ["sanitize==1", {
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ]
}
