// Command kube-apiserver-for-tests runs an embedded etcd and a real kube-apiserver in one process,
// on loopback, for meshrelay's tests. Flags after "--" go to kube-apiserver unchanged.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd data")
	etcdClientPort := flag.Int("etcd-client-port", 0, "etcd client port on 127.0.0.1")
	etcdPeerPort := flag.Int("etcd-peer-port", 0, "etcd peer port on 127.0.0.1")
	flag.Parse()
	if *dataDir == "" || *etcdClientPort == 0 || *etcdPeerPort == 0 {
		fmt.Fprintln(os.Stderr, "usage: kube-apiserver-for-tests --data-dir DIR --etcd-client-port N --etcd-peer-port N -- [kube-apiserver flags]")
		os.Exit(2)
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *etcdClientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *etcdPeerPort)}
	cfg := embed.NewConfig()
	cfg.Name = "default"
	cfg.Dir = filepath.Join(*dataDir, "etcd")
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("default=%s", peerURL.String())
	cfg.LogLevel = "error"
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		os.Exit(1)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcd did not become ready")
		os.Exit(1)
	}
	command := app.NewAPIServerCommand()
	command.SetArgs(append(flag.Args(), "--etcd-servers="+clientURL.String()))
	os.Exit(cli.Run(command))
}
