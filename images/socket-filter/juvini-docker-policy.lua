-- Juvini's Docker API policy: which calls of the hub reach the Docker engine.
--
-- HAProxy runs `juvini_docker_policy` on every request of the hub (with its whole body,
-- `option http-buffer-request`) before passing it on to the engine's socket. It allows only
-- what the lab's spawner does: engine information, the lab's users' containers (create with
-- the lab's images, folders and labels; inspect, logs, start, stop, kill, wait, remove of
-- containers that carry the users' labels), the per-user CIFS share volumes, image inspection
-- and, under Swarm, the same for services. Everything else gets a 403 whose JSON message names
-- the rule, and every request leaves a log line with its verdict (var txn.juvini_verdict).
--
-- The lab's facts (folders, labels, images, networks, ...) come from the policy file the stack
-- renders (infra/socket_filter.py); this file holds no fact about any one lab.
--
-- The Docker engine reads JSON field names case-insensitively (Go's encoding/json, which also
-- folds a few non-ASCII letters such as U+017F onto ASCII ones): fields are looked up without
-- case here, objects with two spellings of one field or non-ASCII field names are refused, and
-- a field the policy does not know may only hold a scalar zero value (an empty list is not
-- "unset" to the engine: "MaskedPaths": [] unmasks /proc).

local cjson = require("cjson")

cjson.decode_max_depth(64)
cjson.decode_invalid_numbers(false)

local NULL = cjson.null

-- --- the lab's policy ------------------------------------------------------------------------

local function read_policy(path)
  local file = assert(io.open(path, "r"), "cannot read the Docker API policy " .. tostring(path))
  local text = file:read("a")
  file:close()
  return cjson.decode(text)
end

local POLICY = read_policy(os.getenv("JUVINI_DOCKER_POLICY"))

local function set_of(list)
  local set = {}
  for _, item in ipairs(list or {}) do
    set[item] = true
  end
  return set
end

local IMAGES = set_of(POLICY.images)
local NETWORKS = set_of(POLICY.networks)
local CAP_ADD = set_of(POLICY.capAdd)
local NAMED_VOLUMES = set_of(POLICY.namedVolumes)
local SHARE_DEVICES = set_of(POLICY.userShareDevices)

-- --- refusals --------------------------------------------------------------------------------

local function is_array_table(value)
  for key in pairs(value) do
    if type(key) ~= "number" then
      return false
    end
  end
  return true
end

-- A refusal travels as an error carrying this table, so that the checks read straight on.
local Refusal = {}

local function refuse(rule, status)
  error(setmetatable({ rule = rule, status = status or 403 }, Refusal), 0)
end

local describe

function describe(value)
  if type(value) == "table" and next(value) == nil then
    return "none"
  end
  if type(value) == "table" and not is_array_table(value) then
    local pairs_text = {}
    for key, item in pairs(value) do
      pairs_text[#pairs_text + 1] = tostring(key) .. "=" .. tostring(item)
    end
    table.sort(pairs_text)
    return table.concat(pairs_text, ", ")
  end
  if type(value) == "table" then
    local items = {}
    for index, item in ipairs(value) do
      items[index] = describe(item)
    end
    return "[" .. table.concat(items, ", ") .. "]"
  end
  return tostring(value)
end

-- --- JSON helpers ----------------------------------------------------------------------------

local function is_null(value)
  return value == nil or value == NULL
end

local function is_array(value)
  return type(value) == "table" and is_array_table(value)
end

-- Go's zero values the engine treats as "not given": null, false, 0 and "".
local function is_unset_scalar(value)
  return is_null(value) or value == false or value == 0 or value == ""
end

local function is_empty(value)
  return is_unset_scalar(value) or (type(value) == "table" and next(value) == nil)
end

-- The fields of a JSON object that the engine decodes into a struct, by lower-case name. Fields
-- not in `known` must be unset scalars: the engine may know fields this policy does not.
local function fields(object, where, known)
  if is_null(object) then
    return {}
  end
  if type(object) ~= "table" or (next(object) ~= nil and is_array(object)) then
    refuse(where .. " must be a JSON object")
  end
  local found = {}
  for key, value in pairs(object) do
    if type(key) ~= "string" or key:find("[\128-\255]") then
      refuse(where .. " has a field name with non-ASCII characters")
    end
    local name = key:lower()
    if found[name] ~= nil then
      refuse(where .. " spells the field " .. key .. " twice")
    end
    if known[name] then
      found[name] = value
    elseif not is_unset_scalar(value) then
      refuse(where .. "." .. key .. " is not allowed (not something the lab's spawner sets)")
    else
      found[name] = NULL
    end
  end
  return found
end

local function known(names)
  local set = {}
  for name in names:gmatch("%S+") do
    set[name:lower()] = true
  end
  return set
end

local function list(value, where)
  if is_null(value) then
    return {}
  end
  if type(value) ~= "table" or not is_array(value) then
    refuse(where .. " must be a list")
  end
  return value
end

local function map(value, where)
  if is_null(value) then
    return {}
  end
  if type(value) ~= "table" or (next(value) ~= nil and is_array(value)) then
    refuse(where .. " must be a JSON object")
  end
  return value
end

local function text(value, where)
  if is_null(value) then
    return ""
  end
  if type(value) ~= "string" then
    refuse(where .. " must be a string")
  end
  return value
end

-- --- what the lab's objects are ---------------------------------------------------------------

local function carries(labels, wanted)
  labels = type(labels) == "table" and labels or {}
  for key, value in pairs(wanted) do
    if labels[key] ~= value then
      return false
    end
  end
  return true
end

local function require_labels(labels, wanted, where)
  if not carries(map(labels, where), wanted) then
    refuse(where .. " must carry the lab's labels " .. describe(wanted))
  end
end

local function require_image(image, where)
  image = text(image, where)
  if not IMAGES[image] then
    refuse(where .. " " .. image .. " is not one of the lab's images")
  end
end

-- A swarm service names the lab's image pinned to the digest the stack pushed
-- (<image>@sha256:<64 hex digits>), so every node runs what was pushed: the name must be one of
-- the lab's images; a digest only names content of that repository.
local function require_pinnable_image(image, where)
  image = text(image, where)
  local name, digest = image:match("^(.+)@sha256:(%x+)$")
  if name and #digest == 64 and not digest:find("%u") then
    image = name
  end
  require_image(image, where)
end

local function require_name(name, where)
  if not name:find("^[%w][%w_.-]*$") or name:sub(1, #POLICY.namePrefix) ~= POLICY.namePrefix then
    refuse(where .. " " .. name .. " must start with " .. POLICY.namePrefix)
  end
end

-- --- folders ---------------------------------------------------------------------------------

local function clean_path(path)
  return path:sub(1, 1) == "/" and not path:find("//", 1, true) and not path:find("/%.%.?/")
    and not path:find("/%.%.?$") and (path == "/" or path:sub(-1) ~= "/")
end

-- The lab folder `source` is, or nil: one of the folders, or a direct child of a folder of
-- children (a user's own folder, their Kerberos ticket folder), never a folder above them.
local function lab_folder(source)
  if not clean_path(source) then
    return nil
  end
  for _, folder in ipairs(POLICY.folders) do
    if folder.children then
      local prefix = folder.path .. "/"
      local rest = source:sub(#prefix + 1)
      if source:sub(1, #prefix) == prefix and rest ~= "" and not rest:find("/", 1, true) then
        return folder
      end
    elseif source == folder.path then
      return folder
    end
  end
  return nil
end

local function check_bind_source(source, read_only, where)
  local folder = lab_folder(source)
  if folder == nil then
    refuse(where .. " binds " .. source .. ", which is not one of the lab's folders")
  end
  if folder.readOnly and not read_only then
    refuse(where .. " binds " .. source .. " writable; the lab mounts it read-only")
  end
end

-- A named volume the lab mounts: a team share's, or a per-user share's (<server>-cifs-<share>).
local function lab_volume(name)
  if NAMED_VOLUMES[name] then
    return true
  end
  local server, share = name:match("^(.+)%-cifs%-([%w_.-]+)$")
  if server == nil then
    return false
  end
  for _, known_share in ipairs(POLICY.userShares) do
    if share == known_share and server:sub(1, #POLICY.namePrefix) == POLICY.namePrefix then
      return true
    end
  end
  return false
end

-- "source:target[:options]" (HostConfig.Binds): a folder of the lab or a lab volume.
local function check_bind(bind, where)
  bind = text(bind, where)
  local parts = {}
  for part in (bind .. ":"):gmatch("([^:]*):") do
    parts[#parts + 1] = part
  end
  if #parts < 2 or #parts > 3 then
    refuse(where .. " " .. bind .. " is not source:target[:ro|rw]")
  end
  local read_only = false
  for option in (parts[3] or ""):gmatch("[^,]+") do
    if option == "ro" then
      read_only = true
    elseif option ~= "rw" then
      refuse(where .. " " .. bind .. ": option " .. option .. " is not allowed (ro or rw only)")
    end
  end
  if parts[1]:sub(1, 1) == "/" then
    check_bind_source(parts[1], read_only, where)
  elseif not lab_volume(parts[1]) then
    refuse(where .. " mounts the volume " .. parts[1] .. ", which is not one of the lab's")
  end
end

local MOUNT = known("Type Source Target ReadOnly Consistency BindOptions VolumeOptions TmpfsOptions")
local BIND_OPTIONS = known("Propagation NonRecursive")
local VOLUME_OPTIONS = known("NoCopy Labels")

-- HostConfig.Mounts or a service's ContainerSpec.Mounts entry.
local function check_mount(mount, where)
  local m = fields(mount, where, MOUNT)
  local kind = text(m.type, where .. ".Type")
  local source = text(m.source, where .. ".Source")
  if kind == "bind" then
    local propagation = text(fields(m.bindoptions, where .. ".BindOptions", BIND_OPTIONS).propagation, where)
    if propagation ~= "" and propagation ~= "rprivate" and propagation ~= "private" then
      refuse(where .. ".BindOptions.Propagation " .. propagation .. " is not allowed (private only)")
    end
    check_bind_source(source, m.readonly == true, where)
  elseif kind == "volume" then
    -- A driver configuration would make a volume of anything (the local driver binds any path).
    fields(m.volumeoptions, where .. ".VolumeOptions", VOLUME_OPTIONS)
    if source ~= "" and not lab_volume(source) then
      refuse(where .. " mounts the volume " .. source .. ", which is not one of the lab's")
    end
  elseif kind ~= "tmpfs" then
    refuse(where .. ".Type " .. kind .. " is not allowed (bind, volume or tmpfs)")
  end
end

-- --- privileges ------------------------------------------------------------------------------

local function check_cap_add(caps, where)
  for _, cap in ipairs(list(caps, where)) do
    local name = text(cap, where):upper():gsub("^CAP_", "")
    if not CAP_ADD[name] then
      refuse(where .. " adds " .. cap .. "; the lab gives back only " .. describe(POLICY.capAdd))
    end
  end
end

local function check_security_opt(options, where)
  local no_new_privileges = false
  for _, option in ipairs(list(options, where)) do
    option = text(option, where)
    if option == "no-new-privileges" or option == "no-new-privileges:true" or option == "no-new-privileges=true" then
      no_new_privileges = true
    else
      refuse(where .. " " .. option .. " is not allowed (no-new-privileges only)")
    end
  end
  if POLICY.noNewPrivileges and not no_new_privileges then
    refuse(where .. " must hold no-new-privileges (security.userContainers.noNewPrivileges)")
  end
end

local function check_user(user, where)
  user = text(user, where)
  if user ~= POLICY.user then
    refuse(where .. " " .. (user == "" and "(the image's)" or user) .. " must be the lab's " .. POLICY.user)
  end
end

local function check_network(name, where)
  if not NETWORKS[name] then
    refuse(where .. " " .. describe(name) .. " is not one of the lab's networks " .. describe(POLICY.networks))
  end
end

local DEVICE_REQUEST = known("Driver Count DeviceIDs Capabilities Options")

-- GPUs as `docker run --gpus` asks for them (a GPU profile); no other device.
local function check_device_request(request, where)
  local r = fields(request, where, DEVICE_REQUEST)
  local driver = text(r.driver, where .. ".Driver")
  if driver ~= "" and driver ~= "nvidia" then
    refuse(where .. ".Driver " .. driver .. " is not allowed")
  end
  if next(map(r.options, where .. ".Options")) ~= nil then
    refuse(where .. ".Options is not allowed")
  end
  for _, capabilities in ipairs(list(r.capabilities, where .. ".Capabilities")) do
    for _, capability in ipairs(list(capabilities, where .. ".Capabilities")) do
      if capability ~= "gpu" and capability ~= "compute" and capability ~= "utility" then
        refuse(where .. ".Capabilities " .. describe(capability) .. " is not allowed (gpu)")
      end
    end
  end
end

-- Host ports: only the Spark port ranges the lab publishes for client mode.
local function check_port_bindings(bindings, where)
  for port, targets in pairs(map(bindings, where)) do
    for _, target in ipairs(list(targets, where .. "." .. port)) do
      local host_port = tonumber(text(fields(target, where, known("HostIp HostPort")).hostport, where))
      local inside = false
      for _, range in ipairs(POLICY.hostPorts) do
        inside = inside or (host_port ~= nil and host_port >= range[1] and host_port <= range[2])
      end
      if not inside then
        refuse(where .. " publishes " .. port .. " on host port " .. describe(host_port)
          .. ", outside the lab's Spark ranges " .. describe(POLICY.hostPorts))
      end
    end
  end
end

-- --- containers ------------------------------------------------------------------------------

local CONTAINER = known([[
  Hostname Domainname User AttachStdin AttachStdout AttachStderr ExposedPorts Tty OpenStdin
  StdinOnce Env Cmd Healthcheck ArgsEscaped Image Volumes WorkingDir Entrypoint NetworkDisabled
  MacAddress Labels StopSignal StopTimeout Shell HostConfig NetworkingConfig
]])

local HOST_CONFIG = known([[
  Binds Mounts NetworkMode PortBindings CapAdd CapDrop SecurityOpt PidsLimit Ulimits Memory
  MemoryReservation MemorySwap MemorySwappiness NanoCpus CpuPeriod CpuQuota CpuShares CpusetCpus
  CpusetMems AutoRemove RestartPolicy ReadonlyRootfs ShmSize Init OomScoreAdj ExtraHosts Dns
  DnsOptions DnsSearch DeviceRequests ConsoleSize Tmpfs Links IpcMode CgroupnsMode
]])

local function check_host_config(host_config, where)
  local h = fields(host_config, where, HOST_CONFIG)
  for index, bind in ipairs(list(h.binds, where .. ".Binds")) do
    check_bind(bind, where .. ".Binds[" .. index .. "]")
  end
  for index, mount in ipairs(list(h.mounts, where .. ".Mounts")) do
    check_mount(mount, where .. ".Mounts[" .. index .. "]")
  end
  check_network(text(h.networkmode, where .. ".NetworkMode"), where .. ".NetworkMode")
  check_port_bindings(h.portbindings, where .. ".PortBindings")
  check_cap_add(h.capadd, where .. ".CapAdd")
  check_security_opt(h.securityopt, where .. ".SecurityOpt")
  for index, request in ipairs(list(h.devicerequests, where .. ".DeviceRequests")) do
    check_device_request(request, where .. ".DeviceRequests[" .. index .. "]")
  end
  if next(list(h.links, where .. ".Links")) ~= nil then
    refuse(where .. ".Links is not allowed")
  end
  local ipc = text(h.ipcmode, where .. ".IpcMode")
  if ipc ~= "" and ipc ~= "private" and ipc ~= "shareable" and ipc ~= "none" then
    refuse(where .. ".IpcMode " .. ipc .. " is not allowed (private)")
  end
  local cgroupns = text(h.cgroupnsmode, where .. ".CgroupnsMode")
  if cgroupns ~= "" and cgroupns ~= "private" then
    refuse(where .. ".CgroupnsMode " .. cgroupns .. " is not allowed (private)")
  end
  if type(h.oomscoreadj) == "number" and h.oomscoreadj < 0 then
    refuse(where .. ".OomScoreAdj below 0 is not allowed")
  end
end

local NETWORKING_CONFIG = known("EndpointsConfig")

local function check_container_create(body, query)
  require_name(query.name or "", "the container name")
  local c = fields(body, "the container", CONTAINER)
  require_image(c.image, "the image")
  require_labels(c.labels, POLICY.userLabels, "the container")
  check_user(c.user, "the container's User")
  check_host_config(c.hostconfig, "HostConfig")
  local networking = fields(c.networkingconfig, "NetworkingConfig", NETWORKING_CONFIG)
  for network in pairs(map(networking.endpointsconfig, "NetworkingConfig.EndpointsConfig")) do
    check_network(network, "NetworkingConfig.EndpointsConfig")
  end
end

-- --- volumes ---------------------------------------------------------------------------------

local VOLUME = known("Name Driver DriverOpts Labels")

-- The per-user CIFS share volumes the hub makes at spawn: the local driver, type cifs, one of
-- the lab's shares (a local volume of type none would bind any host folder).
local function check_volume_create(body)
  local v = fields(body, "the volume", VOLUME)
  local name = text(v.name, "the volume's Name")
  if not lab_volume(name) or NAMED_VOLUMES[name] then
    refuse("the volume " .. name .. " is not a per-user share volume of the lab")
  end
  require_labels(v.labels, POLICY.userShareLabels, "the volume")
  local driver = text(v.driver, "the volume's Driver")
  if driver ~= "" and driver ~= "local" then
    refuse("the volume's Driver " .. driver .. " is not allowed (local)")
  end
  local options = map(v.driveropts, "the volume's DriverOpts")
  if options.type ~= "cifs" or not SHARE_DEVICES[options.device] then
    refuse("the volume must be a CIFS mount of one of the lab's per-user shares " .. describe(POLICY.userShareDevices))
  end
  for key in pairs(options) do
    if key ~= "type" and key ~= "device" and key ~= "o" then
      refuse("the volume's DriverOpts." .. key .. " is not allowed")
    end
  end
end

-- --- services (Swarm) ------------------------------------------------------------------------

local SERVICE = known("Name Labels TaskTemplate Mode UpdateConfig RollbackConfig EndpointSpec")
local TASK = known("ContainerSpec Resources RestartPolicy Placement Networks ForceUpdate")
local CONTAINER_SPEC = known([[
  Image Labels Command Args Hostname Env Dir User TTY OpenStdin ReadOnly Mounts StopSignal
  StopGracePeriod HealthCheck Hosts DNSConfig Isolation Init CapabilityAdd CapabilityDrop Ulimits
]])
local ENDPOINT = known("Mode")

local function check_service_create(body)
  local s = fields(body, "the service", SERVICE)
  require_name(text(s.name, "the service's Name"), "the service name")
  require_labels(s.labels, POLICY.userLabels, "the service")
  local task = fields(s.tasktemplate, "TaskTemplate", TASK)
  local spec = fields(task.containerspec, "TaskTemplate.ContainerSpec", CONTAINER_SPEC)
  require_pinnable_image(spec.image, "the image")
  check_user(spec.user, "the service's User")
  check_cap_add(spec.capabilityadd, "TaskTemplate.ContainerSpec.CapabilityAdd")
  for index, mount in ipairs(list(spec.mounts, "TaskTemplate.ContainerSpec.Mounts")) do
    check_mount(mount, "TaskTemplate.ContainerSpec.Mounts[" .. index .. "]")
  end
  for _, attachment in ipairs(list(task.networks, "TaskTemplate.Networks")) do
    local a = fields(attachment, "TaskTemplate.Networks", known("Target Aliases DriverOpts"))
    check_network(text(a.target, "TaskTemplate.Networks"), "TaskTemplate.Networks")
  end
  fields(s.endpointspec, "EndpointSpec", ENDPOINT)
end

-- --- looking objects up ------------------------------------------------------------------------

-- GET `path` from the engine (HTTP/1.0: the answer ends with the connection). Status and body.
local function engine_get(path)
  local socket = core.tcp()
  socket:settimeout(POLICY.lookupTimeoutSeconds)
  local connected, error_text = socket:connect("unix@" .. POLICY.engineSocket)
  if not connected then
    refuse("the Docker engine did not answer the filter: " .. tostring(error_text), 502)
  end
  socket:send("GET " .. path .. " HTTP/1.0\r\nHost: docker\r\n\r\n")
  local response = socket:receive("*a")
  socket:close()
  local status = tonumber((response or ""):match("^HTTP/%d%.%d (%d%d%d)"))
  if status == nil then
    refuse("the Docker engine gave the filter no answer for " .. path, 502)
  end
  return status, response:match("\r\n\r\n(.*)$") or ""
end

-- The object `kind` (containers, services, volumes) named `id`, which must carry `labels`
-- (found with `labels_of`); its own id, to address it by in the call passed on.
local function lab_object(kind, id, wanted, labels_of, what)
  if not id:find("^[%w][%w_.-]*$") then
    refuse(what .. " " .. id .. " is not a name or id")
  end
  local status, body = engine_get("/" .. kind .. "/" .. id .. (kind == "containers" and "/json" or ""))
  if status ~= 200 then
    -- No such object: say so as the engine does (docker-py raises NotFound on a 404).
    local ok, answer = pcall(cjson.decode, body)
    local message = ok and type(answer) == "table" and answer.message or ("no such " .. what .. ": " .. id)
    error(setmetatable({ rule = message, status = status, passthrough = true }, Refusal), 0)
  end
  local object = cjson.decode(body)
  if not carries(labels_of(object), wanted) then
    refuse(what .. " " .. id .. " is not one of the lab's (it lacks the labels " .. describe(wanted) .. ")")
  end
  return object.ID or object.Id or object.Name
end

local function container_labels(object)
  return object.Config and object.Config.Labels
end

local function service_labels(object)
  return object.Spec and object.Spec.Labels
end

local function volume_labels(object)
  return object.Labels
end

-- --- the request -------------------------------------------------------------------------------

local function parse_query(query)
  local values = {}
  for pair in (query or ""):gmatch("[^&]+") do
    local key, value = pair:match("^([^=]*)=?(.*)$")
    value = value:gsub("%+", " "):gsub("%%(%x%x)", function(hex)
      return string.char(tonumber(hex, 16))
    end)
    if values[key] ~= nil then
      refuse("the query names " .. key .. " twice")
    end
    values[key] = value
  end
  return values
end

local function decode_body(txn)
  local length = tonumber(txn.f:req_hdr("content-length") or "")
  local body = txn.f:req_body() or ""
  if length == nil or length ~= #body then
    refuse("the request body must come whole, with its Content-Length (at most " .. POLICY.bodyBytes .. " bytes)")
  end
  local ok, decoded = pcall(cjson.decode, body)
  if not ok then
    refuse("the request body is not JSON the filter can read")
  end
  return decoded
end

-- Calls on one of the lab's users' containers: method -> action (path after the id).
local CONTAINER_CALLS = {
  GET = { ["/json"] = true, ["/logs"] = true },
  POST = { ["/start"] = true, ["/stop"] = true, ["/kill"] = true, ["/wait"] = true },
  DELETE = { [""] = true },
}

-- Decide `method path`; returns the rule that allows it (a refusal raises) and, when the call
-- must address a looked-up object by its id, the path to pass on instead.
local function decide(txn, method, path, query)
  if method == "GET" or method == "HEAD" then
    if path == "/_ping" or path == "/version" or path == "/info" then
      return "engine information"
    end
  end
  if method == "GET" and path == "/containers/json" then
    return "list containers"
  end
  if method == "GET" and path:find("^/images/.+/json$") then
    return "inspect an image"
  end
  if method == "POST" and path == "/containers/create" then
    check_container_create(decode_body(txn), query)
    return "create one of the lab's users' containers"
  end
  local id, action = path:match("^/containers/([^/]+)(/?[%a]*)$")
  if id and id ~= "json" and id ~= "create" and (CONTAINER_CALLS[method] or {})[action] then
    local full = lab_object("containers", id, POLICY.userLabels, container_labels, "the container")
    return method .. " " .. (action == "" and "(remove)" or action) .. " of a users' container",
      "/containers/" .. full .. action
  end
  if method == "POST" and path == "/volumes/create" then
    check_volume_create(decode_body(txn))
    return "create a per-user share volume"
  end
  local volume = path:match("^/volumes/([^/]+)$")
  if volume and (method == "GET" or method == "DELETE") then
    lab_object("volumes", volume, POLICY.userShareLabels, volume_labels, "the volume")
    return method .. " of a per-user share volume"
  end
  if POLICY.swarm then
    if method == "GET" and path == "/tasks" then
      return "list tasks"
    end
    -- The node a user's task runs on, by id: its hostname for the spawn page and the hub's log.
    if method == "GET" and path:find("^/nodes/[%w]+$") then
      return "inspect a node"
    end
    if method == "POST" and path == "/services/create" then
      check_service_create(decode_body(txn))
      return "create one of the lab's users' services"
    end
    local service, service_action = path:match("^/services/([^/]+)(/?[%a]*)$")
    if service and ((method == "GET" and (service_action == "" or service_action == "/logs"))
        or (method == "DELETE" and service_action == "")) then
      local full = lab_object("services", service, POLICY.userLabels, service_labels, "the service")
      return method .. " " .. service_action .. " of a users' service", "/services/" .. full .. service_action
    end
  end
  refuse(method .. " " .. path .. " is not a call the lab's spawner makes")
end

local MIN_API = { 1, 24 }

local function verdict(txn)
  local method = txn.f:method()
  local full_path = txn.f:path()
  if full_path:find("%", 1, true) or not clean_path(full_path) then
    refuse("the path " .. full_path .. " is not plain (no %-escapes, // or dot segments)")
  end
  if txn.f:req_hdr("transfer-encoding") then
    refuse("chunked request bodies are not accepted")
  end
  local version, major, minor, path = full_path:match("^(/v(%d+)%.(%d+))(/.*)$")
  if version == nil then
    version, path = "", full_path
  elseif tonumber(major) < MIN_API[1] or (tonumber(major) == MIN_API[1] and tonumber(minor) < MIN_API[2]) then
    -- Before 1.24 the engine took a HostConfig when starting a container, unchecked here.
    refuse("API version " .. major .. "." .. minor .. " is older than 1.24")
  end
  local rule, new_path = decide(txn, method, path, parse_query(txn.f:query()))
  local body_allowed = method == "POST" and (path == "/containers/create" or path == "/volumes/create"
    or path == "/services/create")
  if not body_allowed and (tonumber(txn.f:req_hdr("content-length") or "0") or 1) ~= 0 then
    refuse(method .. " " .. path .. " takes no request body here")
  end
  if new_path then
    txn.http:req_set_path(version .. new_path)
  end
  return rule
end

core.register_action("juvini_docker_policy", { "http-req" }, function(txn)
  local ok, result = pcall(verdict, txn)
  if ok then
    txn:set_var("txn.juvini_verdict", "allowed: " .. result)
    return
  end
  if getmetatable(result) ~= Refusal then
    -- A fault in the policy itself: refuse rather than let the call through unchecked.
    result = { rule = "the filter could not check this call: " .. tostring(result), status = 500 }
  end
  local prefix = result.passthrough and "answered: " or "refused: "
  txn:set_var("txn.juvini_verdict", prefix .. result.rule)
  txn:done({
    status = result.status,
    headers = { ["content-type"] = { "application/json" } },
    body = cjson.encode({ message = (result.passthrough and "" or "juvini docker filter: ") .. result.rule }),
  })
end)
