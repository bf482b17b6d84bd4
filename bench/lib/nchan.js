"use strict";
/**
 * nginx + nchan configuration for the comparison rows (bench/run.js, bench/storm.js):
 * one worker, `nchan_subscriber eventsource` on /sub?id=…, `nchan_publisher` on /pub?id=…,
 * everything (pid, logs, temp files) under `dir`.
 */
const NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/**
 * @param {{dir: string, port: number, bufferLength?: number, messageTimeout?: string}} o
 *   bufferLength: nchan_message_buffer_length, the messages per channel kept for
 *   Last-Event-ID resume (and for late subscribers); messageTimeout: how long they are kept.
 */
function nchanConfig({ dir, port, bufferLength = 100, messageTimeout = "60s" }) {
  return `load_module ${NCHAN_MODULE};
user root;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 19500; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  nchan_shared_memory_size 256M;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id $arg_id;
      nchan_subscriber_first_message newest;
    }
    location = /pub {
      nchan_publisher;
      nchan_channel_id $arg_id;
      nchan_message_buffer_length ${bufferLength};
      nchan_message_timeout ${messageTimeout};
    }
    location = /ping { return 200; }
  }
}
`;
}

module.exports = { nchanConfig, NCHAN_MODULE };
