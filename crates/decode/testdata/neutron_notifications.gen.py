import json
D="2026-10-14"
PROJ="54fadb412c4e40cdbaed9335e4c35a9e"; USER="113d3a99c3da401fbd62cc2caa5b96d2"
NET="8b2d7c4e-1f0a-4a3b-9c6d-2e5f8a7b0c1d"; SUB="f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
EXT="a0b1c2d3-e4f5-4607-8809-1a2b3c4d5e6f"; EXTSUB="0f1e2d3c-4b5a-4697-a8b9-c0d1e2f3a4b5"
R1="3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f"
VMS={"A":("6a1b2c3d-0000-4a00-8a00-00000000000a","10.1.2.10","fa:16:3e:00:00:0a","1d2c3b4a-0000-4b00-9b00-0000000000a1","compute-1"),
     "B":("6a1b2c3d-0000-4a00-8a00-00000000000b","10.1.2.11","fa:16:3e:00:00:0b","1d2c3b4a-0000-4b00-9b00-0000000000b1","compute-2"),
     "C":("6a1b2c3d-0000-4a00-8a00-00000000000c","10.1.2.12","fa:16:3e:00:00:0c","1d2c3b4a-0000-4b00-9b00-0000000000c1","compute-1")}
PX="deadbeef-0000-4000-8000-00000000dead"
n=[0]
def mid():
    n[0]+=1; return "7e57%04x-0000-4000-8000-%012x"%(n[0],n[0])
def nova(t,ty,vm,state,deleted=""):
    u,ip,mac,_,host=VMS[vm]
    return {"event_type":ty,"timestamp":f"{D} {t}.000001","message_id":mid(),"priority":"INFO","publisher_id":f"compute.{host}",
      "payload":{"tenant_id":PROJ,"user_id":USER,"instance_id":u,"display_name":"vm-"+vm.lower(),"hostname":"vm-"+vm.lower(),
       "host":host,"node":host+".example.org","image_ref_url":"http://glance.example.org:9292/images/155d900f-4e14-4e4c-a73d-069cbf4541e6",
       "state":state,"state_description":"","created_at":f"{D} 07:59:00+00:00","launched_at":f"{D}T{t}.000000","deleted_at":deleted,"terminated_at":deleted,
       "fixed_ips":[{"address":ip,"vif_mac":mac,"label":"private","type":"fixed","version":4,"floating_ips":[]}]}}
def neutron(t,ty,payload,env):
    m={"message_id":mid(),"publisher_id":"network.controller-1","event_type":ty,"priority":"INFO","payload":payload,"timestamp":f"{D} {t}.123456"}
    if env:
        m.update({"_context_user_id":USER,"_context_project_id":PROJ,"_context_tenant_id":PROJ,"_context_request_id":"req-"+mid(),
                  "_context_is_admin":False,"_context_roles":["member","reader"],"_unique_id":mid().replace("-","")})
        return {"oslo.version":"2.0","oslo.message":json.dumps(m)}
    return m
def port(vm,t,rev):
    u,ip,mac,pid,host=VMS[vm]
    return {"id":pid,"name":"","network_id":NET,"tenant_id":PROJ,"mac_address":mac,"admin_state_up":True,"status":"ACTIVE",
      "device_id":u,"device_owner":"compute:nova","fixed_ips":[{"subnet_id":SUB,"ip_address":ip}],"allowed_address_pairs":[],
      "extra_dhcp_opts":[],"security_groups":["5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"],"description":"","binding:vnic_type":"normal",
      "binding:profile":{},"binding:host_id":host,"binding:vif_type":"ovs","binding:vif_details":{"port_filter":True,"connectivity":"l2","bridge_name":"br-int","datapath_type":"system"},
      "port_security_enabled":True,"qos_policy_id":None,"qos_network_policy_id":None,"resource_request":None,"ip_allocation":"immediate",
      "tags":[],"created_at":f"{D}T07:59:50Z","updated_at":f"{D}T{t}Z","revision_number":rev,"project_id":PROJ}
def fip(fid,addr,t,vm=None,rev=1,port_id=None):
    pid=port_id if port_id else (VMS[vm][3] if vm else None)
    fixed=VMS[vm][1] if vm else ("10.1.2.99" if port_id else None)
    return {"id":fid,"tenant_id":PROJ,"floating_network_id":EXT,"router_id":R1 if pid else None,"fixed_ip_address":fixed,
      "floating_ip_address":addr,"port_id":pid,"status":"ACTIVE" if pid else "DOWN","description":"","dns_domain":"","dns_name":"",
      "port_details":None,"qos_policy_id":None,"tags":[],"created_at":f"{D}T08:30:00Z","updated_at":f"{D}T{t}Z","revision_number":rev,"project_id":PROJ}
F1="c0ffee00-0000-4000-8000-000000000001"; F2="c0ffee00-0000-4000-8000-000000000002"
F3="c0ffee00-0000-4000-8000-000000000003"; F4="c0ffee00-0000-4000-8000-000000000004"
L=[]
L.append(neutron("07:59:55","port.create.end",{"port":port("A","07:59:55",1)},True))
L.append(nova("08:00:01","compute.instance.create.end","A","active"))
L.append(neutron("08:09:55","port.create.end",{"port":port("B","08:09:55",1)},False))
L.append(nova("08:10:01","compute.instance.create.end","B","active"))
L.append(neutron("08:14:55","port.create.end",{"port":port("C","08:14:55",1)},True))
L.append(nova("08:15:01","compute.instance.create.end","C","active"))
L.append(neutron("08:20:00","router.create.end",{"router":{"id":R1,"name":"router1","tenant_id":PROJ,"admin_state_up":True,"status":"ACTIVE",
  "external_gateway_info":{"network_id":EXT,"enable_snat":True,"external_fixed_ips":[{"subnet_id":EXTSUB,"ip_address":"203.0.113.2"}]},
  "description":"","availability_zones":[],"availability_zone_hints":[],"routes":[],"flavor_id":None,"distributed":False,"ha":False,
  "tags":[],"created_at":f"{D}T08:20:00Z","updated_at":f"{D}T08:20:00Z","revision_number":1,"project_id":PROJ}},True))
# The router's interface on the VMs' subnet (neutron/db/l3_db.py, notify_router_interface_action:
# `router.interface.create` / `.delete`, no phase, payload {router_interface: {id: ROUTER, ...}}).
RIF="1d2c3b4a-0000-4b00-9b00-0000000000f1"
RI={"router_interface":{"id":R1,"tenant_id":PROJ,"port_id":RIF,"subnet_id":SUB,"subnet_ids":[SUB],"network_id":NET}}
L.append(neutron("08:25:00","router.interface.create",RI,True))
L.append(neutron("08:30:00","floatingip.create.end",{"floatingip":fip(F1,"203.0.113.10","08:30:00")},True))
L.append(neutron("09:00:00","floatingip.update.end",{"floatingip":fip(F1,"203.0.113.10","09:00:00","A",2)},True))
L.append(neutron("09:00:00","floatingip.create.end",{"floatingip":fip(F4,"203.0.113.40","09:00:00","A",1)},False))
L.append(neutron("09:05:00","floatingip.create.end",{"floatingip":fip(F2,"203.0.113.20","09:05:00",None,1,PX)},True))
L.append(neutron("09:10:00","floatingip.create.end",{"floatingip":fip(F3,"203.0.113.30","09:10:00","C",1)},True))
L.append(nova("09:40:00","compute.instance.delete.end","C","deleted",f"{D}T09:40:00.000000"))
L.append(neutron("10:00:00","floatingip.update.end",{"floatingip":fip(F1,"203.0.113.10","10:00:00",None,3)},True))
L.append(neutron("10:30:00","floatingip.update.end",{"floatingip":fip(F1,"203.0.113.10","10:30:00","B",4)},False))
L.append(neutron("11:00:00","port.delete.end",{"port_id":VMS["B"][3]},True))
L.append(neutron("11:30:00","floatingip.delete.end",{"floatingip_id":F1,"floatingip":fip(F1,"203.0.113.10","11:30:00",None,5)},True))
L.append(neutron("11:45:00","router.interface.delete",RI,False))
for l in L: print(json.dumps(l))
