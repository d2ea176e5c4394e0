-- Argo CD health check for gitseal.dev/SealedSecret (also fits bitnami.com/SealedSecret
-- reconciled by gitseal-controller --bitnami-compat).
--
--   Healthy      Synced=True, and the controller has seen the current spec
--                (status.observedGeneration == metadata.generation)
--   Degraded     Synced=False for the current spec; the message is the controller's
--   Progressing  no status yet, no Synced condition, Synced=Unknown, a status written for
--                an older generation (the new spec is not unsealed yet), or being deleted
--
-- Plain Lua 5.1 (Argo CD runs gopher-lua): no library beyond the base functions and table.
local hs = {}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  if obj.metadata.finalizers ~= nil and #obj.metadata.finalizers > 0 then
    hs.message = "Pending deletion; blocked by finalizers: " .. table.concat(obj.metadata.finalizers, ", ")
  end
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for gitseal-controller to unseal"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for gitseal-controller to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for gitseal-controller to observe generation " .. tostring(generation) ..
      " (status is for generation " .. tostring(observed) .. ")"
  end
  return hs
end

local synced = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Synced" then
      synced = condition
      break
    end
  end
end

if synced == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for gitseal-controller to unseal"
elseif synced.status == "True" then
  hs.status = "Healthy"
  hs.message = synced.message
  if hs.message == nil or hs.message == "" then
    hs.message = "Unsealed"
    if obj.status.keyId ~= nil then
      hs.message = "Unsealed with key " .. obj.status.keyId
    end
  end
elseif synced.status == "False" then
  hs.status = "Degraded"
  hs.message = synced.message or synced.reason or "SealedSecret could not be unsealed"
else
  hs.status = "Progressing"
  hs.message = synced.message or "Waiting for gitseal-controller to unseal"
end
return hs
